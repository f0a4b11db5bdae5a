/** User-created devices live here in QOM, named by their id (qdev_set_id()). */
export const PERIPHERAL = '/machine/peripheral';
