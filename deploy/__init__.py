"""Deploy: the local service runner, its configs, and the compose file for Docker users."""
