// @vfiokit/vfio-core: the native addon's exports, for this machine's target
// (loader.js finds the binary, or says which package holds it), and the
// error class every call throws (error.js), registered with the addon here so
// that what it throws is a VfioError from the start.
'use strict';
const { useErrorClass, ...binding } = require('./loader').loadBinding(require('./package.json'), __dirname);
const { VfioError } = require('./error');

useErrorClass(VfioError);
module.exports = { ...binding, VfioError };
