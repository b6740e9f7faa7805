// Preloaded (node --require) into servers that listen on every interface when given only a
// port, such as @modelcontextprotocol/server-everything: binds them to 127.0.0.1 instead.
const net = require('node:net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    args.splice(1, 0, '127.0.0.1');
  }
  return listen.apply(this, args);
};
