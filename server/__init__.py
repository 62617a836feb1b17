"""rvkvm server: the virtual RISC-V KVM host (KVM model plus gRPC adapters)."""
