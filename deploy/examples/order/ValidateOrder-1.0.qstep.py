from wf import QorusNormalStep


class ValidateOrder(QorusNormalStep):
    def primary(self):
        order = self.getStaticData()
        if not order.get("order_id") or not order.get("lines"):
            raise ValueError("an order needs an order_id and at least one line")
        self.updateDynamicData({"validated": True})
        self.logInfo("order %s is valid" % order["order_id"])
