"""Wiring and process life: build the app's context, run `argus up`, start/stop a local head."""
