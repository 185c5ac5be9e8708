"""``external_id``: the key erpsync writes with each record; unique, so a resend is refused."""

from trytond.model import Unique, fields
from trytond.pool import PoolMeta


class ExternalIdMixin:
    __slots__ = ()
    external_id = fields.Char(
        "External ID", help="The synchroniser's idempotency key (erpsync)."
    )

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            (
                "erpsync_external_id_unique",
                Unique(t, t.external_id),
                "erpsync_tryton.msg_external_id_unique",
            ),
        ]

    @classmethod
    def copy(cls, records, default=None):
        default = dict(default or {})
        default.setdefault("external_id", None)
        return super().copy(records, default=default)


class ShipmentInternal(ExternalIdMixin, metaclass=PoolMeta):
    __name__ = "stock.shipment.internal"


class POSSale(ExternalIdMixin, metaclass=PoolMeta):
    __name__ = "sale.point.sale"


class POSCashSession(ExternalIdMixin, metaclass=PoolMeta):
    __name__ = "sale.point.cash.session"


class Inventory(ExternalIdMixin, metaclass=PoolMeta):
    __name__ = "stock.inventory"
