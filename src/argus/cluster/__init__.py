"""The one boundary to Ray: the ServeClient protocol, its Ray implementation and a fake."""
