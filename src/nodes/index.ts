export = function (RED: any) { void RED; };
