"""The Sluice Python runner and the API it gives interface code.

Importing this package makes ``UserApi`` a global (a builtin), as in Qorus, where
interface code calls it without importing it.
"""

import builtins

from .errors import QorusException, StepError
from .userapi import UserApi

builtins.UserApi = UserApi

__all__ = ["QorusException", "StepError", "UserApi"]
