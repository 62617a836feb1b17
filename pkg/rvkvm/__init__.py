"""rvkvm: a virtual RISC-V KVM host over gRPC, backed by a pure-Python RV64GC
emulator.

Subpackages (each a folder at the top of the source repository):

- ``rvkvm.client``: the Python client library (``rvkvm.client.Kvm``), a small
  VMM and the ``rvkvm`` command;
- ``rvkvm.server``: the virtual KVM host (``rvkvm.server.kvm``, no gRPC) and
  its gRPC service (``rvkvm.server.rpc``, ``rvkvm-server``);
- ``rvkvm.emulator``: the pure-Python RV64 hart;
- ``rvkvm.uapi``: facts of the Linux KVM RISC-V uapi (ONE_REG ids, names);
- ``rvkvm.v1``: the generated gRPC code of the contract ``rvkvm.v1``; its
  ``.proto`` sources ship as data in ``rvkvm.proto``
  (``importlib.resources.files("rvkvm.proto")``).
"""
