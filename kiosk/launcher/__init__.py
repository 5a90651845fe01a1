"""`allervers kiosk`: the public terminal's launcher (Textual), talking to the controller's kiosk socket only."""
