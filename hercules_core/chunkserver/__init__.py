"""The chunkserver role: stores chunks, serves reads, takes part in the write pipeline."""
