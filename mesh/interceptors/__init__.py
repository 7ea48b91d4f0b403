"""gRPC server interceptors, one concern each.

Order (outermost first), as `mesh.server.build_server` installs them:

1. `ErrorMappingInterceptor`: domain exceptions -> google.rpc.Status;
   anything unexpected -> INTERNAL without internals.

The mesh issue adds request ids, tracing, access logs, authentication,
authorization and deadline propagation in front of it.
"""

from .errors import ErrorMappingInterceptor

__all__ = ["ErrorMappingInterceptor"]
