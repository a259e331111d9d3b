"""Storage backends: each module implements the Store primitives for one kind of database."""
