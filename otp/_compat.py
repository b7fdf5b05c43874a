"""Deprecated location of :mod:`otp._backends` (kept while other branches still import it)."""

from ._backends import (
    BUDGET_OPS as BUDGET_OPS,
)
from ._backends import (
    BUDGET_SLICE as BUDGET_SLICE,
)
from ._backends import (
    Backend as Backend,
)
from ._backends import (
    Expired as Expired,
)
from ._backends import (
    Parker as Parker,
)
from ._backends import (
    Promise as Promise,
)
from ._backends import (
    backend as backend,
)
