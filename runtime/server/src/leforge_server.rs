//! The leforge server: wires concrete backends into the HTTP API.
