from wf import QorusNormalStep


class STOCK_UNAVAILABLE(Exception):
    """Declared in example-order-errors as a RETRY error: the step runs again later."""


class ReserveStock(QorusNormalStep):
    def primary(self):
        order = self.getStaticData()
        reserved = [line["sku"] for line in order["lines"]]
        self.updateDynamicData({"reserved": reserved})

    def validation(self):
        # Run before a repeat of primary(): if the reservation was recorded, do not
        # reserve twice.
        return "COMPLETE" if self.getDynamicData().get("reserved") else "RETRY"
