"""Model serving: the spec users write, its rules, its states, and (later) its deployment."""
