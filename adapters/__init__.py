"""heirline.adapters: the I/O around the pure core (CLI, files, sockets, stdio)."""
