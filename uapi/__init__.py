"""Facts of the Linux KVM RISC-V uapi that the server and every client share,
kept once, as rust-vmm keeps them in ``kvm-bindings``: ``onereg`` (ONE_REG id
encoding, register names, the ISA/SBI extension and FWFT enums) and ``kvm``
(exit reasons, MP states, interrupt and flag values). Standard library only.
"""
