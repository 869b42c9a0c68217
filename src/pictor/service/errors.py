"""What can go wrong in a use case, in terms the API layer maps onto HTTP and the OpenAI error shape."""

from __future__ import annotations


class ServiceError(Exception):
    """A refusal with a message for the user, the offending parameter, and a stable code."""

    kind = "invalid_request"

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class InvalidRequest(ServiceError):
    kind = "invalid_request"


class NotFoundError(ServiceError):
    kind = "not_found"


class UnknownModel(ServiceError):
    kind = "model_not_found"

    def __init__(self, name: str):
        super().__init__(f"The model '{name}' does not exist or you do not have access to it.", "model",
                         "model_not_found")


class ModelFailure(ServiceError):
    kind = "model_failure"
