"""Dialects: the API shapes a client may speak, each a pure translation to and from the one
shape the mesh routes (OpenAI chat completions).

A dialect turns its request into a chat-completions request (`to_chat`), and gives a `Shaper`
that turns the upstream's answer back: a whole body (`body`) or a stream, piece by piece as it
arrives (`stream().feed`). No I/O, no clock of their own: the shell passes both in.
"""
