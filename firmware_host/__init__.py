"""allervers on-board controller: the long-running process, its store, API, CLI and links."""
