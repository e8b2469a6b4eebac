"""Storage: the jobs database, its migrations, and the blob store."""
