"""The worker side of rvkvm's worker processes: the IPC (``protocol``) and
the worker's main loop (``main``), which runs VMs on the KVM model for a
front end in another process. No gRPC here, and Python 3.9 syntax only:
the worker may run on PyPy. The front end's side is ``rvkvm.server.rpc.workers``."""
