"""Who is calling: bearer tokens, their hashing, and the caller (Principal)."""
