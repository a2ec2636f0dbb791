-- Where a plugin version came from when it was pulled from an OCI registry (the reference
-- pinned to its manifest digest); NULL for an upload.
ALTER TABLE plugin_versions ADD COLUMN source TEXT;
