"""Thumbnails: uploads queued by the web process, sized by ``runworker``, shown live."""
