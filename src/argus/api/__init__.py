"""The management API and (later) the UI: thin routes over the control-plane operations."""
