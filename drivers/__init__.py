"""Device drivers: for each device kind its protocol, register or command table, and simulator."""
