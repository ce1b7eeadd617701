"""Hospital booking API: the code behind app.py."""
