"""The only place that touches files: image decode/encode and atomic, no-clobber writes."""
