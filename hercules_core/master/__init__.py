"""The master role: namespace, chunk allocation, placement, leases, chunkserver tracking."""
