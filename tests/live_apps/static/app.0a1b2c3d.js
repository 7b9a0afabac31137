console.log("fingerprinted");
