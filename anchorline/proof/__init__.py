"""The proof domain: manifests, signatures, Merkle batches, attestations, receipts, the registry."""
