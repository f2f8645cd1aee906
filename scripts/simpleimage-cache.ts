// simpleimage-cache: the operator's command for the download cache (list, prefetch, purge).
import { runScript } from '../lib/main.js'

runScript({
  name: 'simpleimage-cache',
  usage: `usage: simpleimage-cache list | prefetch [--variant V] IMAGE | purge [--variant V] [--expired]`,
  argv: (args) => ['list', 'prefetch', 'purge'].includes(args[0]),
  async run() {
    throw new Error('not implemented yet')
  },
})
