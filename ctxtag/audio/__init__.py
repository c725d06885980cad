"""Audio front-end: decoding and cropping, the log-mel transform, and the content-addressed mel cache."""
