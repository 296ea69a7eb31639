"""moto's server with DynamoDB's item-level atomicity.

moto serves each request on its own thread and applies an UpdateItem as a
read, a change and a write in Python, so two concurrent `ADD` updates on one
item can lose one of them. Real DynamoDB applies every write atomically; the
adapter tests (concurrent counters, conditional writes) rely on exactly that.
One lock around the backend's item operations restores it.

moto also backs up every table a transaction touches with a deep copy, once
per action, so a TransactWriteItems costs time proportional to the whole
table: a few thousand items make each one take a second, which no DynamoDB
does. Under the lock, backing up only the items the actions touch gives
the same all-or-nothing result.

A Query on a table's own key reads (and sorts) every item of the table to
keep one partition's; it reads only that partition here.

The server speaks HTTP/1.1, so clients keep their connections instead of
opening one (and the server a thread) per request.

And moto's dispatcher lists its own package directory on disk for every
request, under a lock all requests share; the list is read once here.
"""

import functools
import sys
import threading

import copy
import types

from moto import server
from moto.dynamodb import models as _models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table

_LOCK = threading.RLock()

from moto import backends as _backends

_MOTO_MODULES = tuple(_backends.list_of_moto_modules())
_backends.list_of_moto_modules = lambda: _MOTO_MODULES

# The whole-table backups become no-ops (the table itself is "restored")...
_models.copy = types.SimpleNamespace(
    deepcopy=lambda x, *a, **k: x if isinstance(x, Table) else copy.deepcopy(x, *a, **k),
    copy=copy.copy,
)
_original_transact = DynamoDBBackend.transact_write_items


def _transact_write_items(self, transact_items):
    """...and the items the actions touch are backed up and put back instead."""
    backups = []
    for action in transact_items:
        try:
            _, op = next(iter(action.items()))
            table = self.get_table(op["TableName"])
            if "Item" in op:
                key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = op["Item"][table.range_key_attr]
            else:
                key = op["Key"]
            before = self.get_item(op["TableName"], key)
            backups.append(
                (op["TableName"], key, None if before is None else copy.deepcopy(before.to_json()["Attributes"]))
            )
        except Exception:  # the original call reports a malformed action
            continue
    try:
        return _original_transact(self, transact_items)
    except Exception:
        for table_name, key, attrs in reversed(backups):
            if attrs is None:
                if self.get_item(table_name, key) is not None:
                    self.delete_item(table_name, key)
            else:
                self.put_item(table_name, attrs)
        raise


DynamoDBBackend.transact_write_items = _transact_write_items

_original_query = Table.query


def _query(self, hash_key, *args, **kwargs):
    index_name = kwargs.get("index_name") if len(args) < 7 else args[6]
    if index_name is not None or not self.range_key_attr or hash_key is None:
        return _original_query(self, hash_key, *args, **kwargs)
    # The original filters all_items() down to this partition: give it only
    # this partition (items of one hash key, in range-key order).
    partition = list(self.items.get(hash_key, {}).values())
    self.all_items = lambda: partition
    try:
        return _original_query(self, hash_key, *args, **kwargs)
    finally:
        del self.all_items


Table.query = _query

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

from werkzeug.serving import WSGIRequestHandler

WSGIRequestHandler.protocol_version = "HTTP/1.1"

if __name__ == "__main__":
    server.main(sys.argv[1:])
