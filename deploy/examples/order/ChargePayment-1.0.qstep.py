from wf import QorusNormalStep


class ChargePayment(QorusNormalStep):
    def primary(self):
        order = self.getStaticData()
        total = sum(line.get("price", 0) * line.get("qty", 1) for line in order["lines"])
        self.updateDynamicData({"charged": total})

    def validation(self):
        return "COMPLETE" if "charged" in self.getDynamicData() else "RETRY"
