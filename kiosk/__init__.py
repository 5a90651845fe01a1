"""The public terminal: launcher, session, wipe, browser policies and anonymous statistics."""
