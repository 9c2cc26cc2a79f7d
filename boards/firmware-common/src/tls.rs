//! Native mode: TLS over the core's `Connector`.
