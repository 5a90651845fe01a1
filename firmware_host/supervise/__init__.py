"""`allervers supervise`: the association office's fleet view over MQTT (Textual)."""
