"""Models travel over the LAN (issue 14): content digests, the blob endpoint's core, the
fetcher (chunked, resumable, verified) and the model store with its LRU bound."""
