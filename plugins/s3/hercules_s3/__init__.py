"""S3-compatible API for Hercules: buckets are top-level directories, keys are paths below them."""
