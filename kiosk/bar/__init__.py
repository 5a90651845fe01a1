"""The session bar: a Chromium extension (bar.js, background.js) and its native-messaging bridge (host.py)."""
