"""The example project: upload an image, watch ``runworker`` make its thumbnails live."""
