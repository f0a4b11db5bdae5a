import test from 'ava';
import { IommuType, VfioHost } from './index';

test('the mock container reports VFIO API version 0 as the kernel does', (t) => {
  t.is(VfioHost.mock().apiVersion(), 0);
});

test('the mock container offers type1 and type1v2 but not sPAPR TCE on an x86 host', (t) => {
  const c = VfioHost.mock();
  t.true(c.checkExtension(IommuType.Type1));
  t.true(c.checkExtension(IommuType.Type1v2));
  t.false(c.checkExtension(IommuType.SpaprTceV2));
});
