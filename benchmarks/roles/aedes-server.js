// A bare aedes 1.x broker as a process of its own, its default in-memory persistence, on the port given:
//   node benchmarks/roles/aedes-server.js PORT
// The bridge workload's floor: what aedes alone costs to relay a message, before fnbus adds anything.
import { createServer } from 'node:net'
import { Aedes } from 'aedes'

const aedes = await Aedes.createBroker()
const server = createServer(aedes.handle)
server.listen(Number(process.argv[2]), '127.0.0.1')
process.on('SIGTERM', () => { server.close(); aedes.close(() => process.exit(0)) })
