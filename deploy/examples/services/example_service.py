from svc import QorusService


class ExampleService(QorusService):
    """Counts echo() calls in its state data, which survives restarts of the service."""

    def init(self):
        # State data is kept in the system database; a new service starts with none.
        state = self.getStateData() or {}
        self.logInfo("EXAMPLE-SERVICE starting; echo has been called %d time(s)",
                     state.get("calls", 0))

    def echo(self, *args):
        state = self.getStateData() or {}
        state["calls"] = state.get("calls", 0) + 1
        self.saveStateData(state)
        return list(args)

    def info(self):
        state = self.getStateData() or {}
        return {"service": self.getServiceInfo(), "calls": state.get("calls", 0)}
