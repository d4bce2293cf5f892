"""Table Storage: the clients the settings name (a connection string locally, the managed identity in Azure),
and bytes kept in chunks of one entity."""
