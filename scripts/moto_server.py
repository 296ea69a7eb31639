"""moto's server with DynamoDB's item-level atomicity.

moto serves each request on its own thread and applies an UpdateItem as a
read, a change and a write in Python, so two concurrent `ADD` updates on one
item can lose one of them. Real DynamoDB applies every write atomically; the
adapter tests (concurrent counters, conditional writes) rely on exactly that.
One lock around the backend's item operations restores it.
"""

import functools
import sys
import threading

from moto import server
from moto.dynamodb.models import DynamoDBBackend

_LOCK = threading.RLock()

for _name in (
    "put_item",
    "get_item",
    "query",
    "scan",
    "update_item",
    "delete_item",
    "transact_write_items",
    "transact_get_items",
    "batch_write_item",
):
    _method = getattr(DynamoDBBackend, _name, None)
    if _method is None:
        continue

    def _atomic(method):
        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            with _LOCK:
                return method(*args, **kwargs)

        return wrapper

    setattr(DynamoDBBackend, _name, _atomic(_method))

if __name__ == "__main__":
    server.main(sys.argv[1:])
