"""Public testing helpers (like `trio.testing`): pure fakes of what a node does, used by the
test suite and the closed-loop simulation. Product code never imports this package."""
