"""Browser front end: pages served by Django over the same public API and websocket."""
