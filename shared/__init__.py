"""The gateway's own library: settings, validation, the Defender client, rate limiting and HTTP problems."""
