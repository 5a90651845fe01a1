"""The driver's console (`allervers console`): a Textual app on the control socket; app.py is the entry point."""
