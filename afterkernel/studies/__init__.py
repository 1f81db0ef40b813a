"""Studies: one module per experiment protocol, over the kernels/ math."""
